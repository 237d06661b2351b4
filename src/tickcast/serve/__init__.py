"""The serving process: the ASGI app and its REST routes (``api``), the OpenAPI text
(``openapi``), the Prometheus collector (``metrics``), the uvicorn runner (``server``), the
listening sockets (``listen``), the ``--workers`` supervisor (``workers``) and the garbage
collector policy (``gcpolicy``).

May import every stage and the modules that tie them together, never the CLI. ``listen``
and ``gcpolicy`` import nothing of tickcast, so the workers supervisor can bind its port
before any of the app is loaded.
"""
