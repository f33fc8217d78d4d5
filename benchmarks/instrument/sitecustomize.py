"""Benchmark-only instrumentation (never installed): record every gRPC request a server receives.

The scenarios suite puts this directory first on PYTHONPATH of the node and broker processes it
starts and sets MPC_MARKET_RECORD=1. Every ``grpc.server`` then gets one more interceptor, which
appends each request message, serialized, to ``NAME.received`` in the working directory (NAME:
the stem of the process's ``--config``), so the leakage scan sees what an actor received and not
only what it chose to store.
"""

import os
import sys

if os.environ.get('MPC_MARKET_RECORD') and '--config' in sys.argv:
    import threading

    import grpc

    _config = sys.argv[sys.argv.index('--config') + 1]
    _path = os.path.join(os.getcwd(), os.path.splitext(os.path.basename(_config))[0] + '.received')
    _lock = threading.Lock()

    def _record(method, request):
        data = request.SerializeToString()
        with _lock, open(_path, 'ab') as f:
            f.write(method.encode() + b'\n' + len(data).to_bytes(4, 'big') + data)

    class _Recorder(grpc.ServerInterceptor):
        def intercept_service(self, continuation, details):
            handler = continuation(details)
            if handler is None or handler.unary_unary is None:
                return handler
            inner = handler.unary_unary

            def recorded(request, context):
                _record(details.method, request)
                return inner(request, context)
            return handler._replace(unary_unary=recorded)

    _server = grpc.server

    def _recording_server(*args, **kwargs):
        kwargs['interceptors'] = [_Recorder(), *kwargs.get('interceptors', ())]
        return _server(*args, **kwargs)
    grpc.server = _recording_server
