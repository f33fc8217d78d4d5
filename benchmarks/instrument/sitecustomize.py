"""Benchmark-only instrumentation (never installed): record every gRPC request a server receives,
and switch single mitigations off for the mitigations suite (see the end of this file).

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


# -- benchmark-only: switch one mitigation off in the MPC node processes (the mitigations suite) --
# MPC_MARKET_BENCH_OFF=validation: MarketNode.validate trusts every package (no input checks);
# MPC_MARKET_BENCH_OFF=mpc-tls: MPyC's own start-up over plain TCP instead of mutual TLS.
_OFF = os.environ.get('MPC_MARKET_BENCH_OFF', '')
_TARGETS = {'validation': 'mpc_market.mpc.clearing', 'mpc-tls': 'mpc_market.mpc.mpyc_internals'}

if _OFF in _TARGETS:
    import importlib.machinery

    def _switch_off(module):
        if _OFF == 'validation':
            import numpy as np

            async def trusting(self, present):
                return np.asarray(present, dtype=bool).copy()
            module.MarketNode.validate = trusting
        else:
            async def plain_tcp(rt, keys_dir):
                from mpyc.runtime import Runtime
                rt.options.ssl = False
                await Runtime.start(rt)
            module.start = plain_tcp

    class _SwitchOnImport:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name != _TARGETS[_OFF]:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            loader = spec.loader
            original = loader.exec_module

            def exec_module(module):
                original(module)
                _switch_off(module)
            loader.exec_module = exec_module
            return spec
    sys.meta_path.insert(0, _SwitchOnImport)
