"""Running the SDK on a Ray cluster: many categories at once, batch scoring, HTTP serving.

An optional extra (``pip install 'fractalad-edge[ray]'``); nothing outside this subpackage
imports Ray. Each module is one job: ``cluster`` (connect / start a local instance),
``train_many``, ``batch_predict``, ``serve``.
"""
