"""A whole deployment on one machine: fresh keys, configs, and broker + nodes as processes.

Used by ``mpc-market up``, the end-to-end tests and the deployment benchmark. Each node may
run in its own network namespace (see parties/netns.sh): then it listens on its namespace's
address and reaches the others over veth links, optionally with netem latency.
"""

import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Self

from ..common import keys
from ..common.errors import Unreachable
from ..common.files import make_private_dir
from ..common.manifest import manifest_from_keys, write_manifest
from ..mpc.local import free_ports
from ..mpc.supervisor import with_single_threaded_blas

NETNS_PREFIX = 'mm'        # namespaces PREFIX-node<i>, as parties/netns.sh makes them
NETNS_SUBNET = '10.77.0'
RETAILER = 'retailer'      # NodeConfig.retailer's default


def netns_address(index: int, subnet: str = NETNS_SUBNET) -> str:
    """The address of node index in its network namespace (parties/netns.sh).

    Args:
        index: the node.
        subnet: the namespaces' /24 (three octets).

    Returns:
        e.g. 10.77.0.10 for node 0.
    """
    return f'{subnet}.{10 + index}'


def _toml_list(values: Iterable[str]) -> str:
    return '[' + ', '.join(f'"{v}"' for v in values) + ']'


class LocalDeployment:
    """directory/: keys/, broker.toml, node{i}.toml, data and logs of every process."""

    def __init__(self, directory: str, nodes: int = 3, netns: bool = False, netns_prefix: str = NETNS_PREFIX,
                 subnet: str = NETNS_SUBNET, daemon_args: Sequence[str] = ()) -> None:
        """A deployment in directory (nothing is created or started yet).

        Args:
            directory: where keys, configs, data and logs go.
            nodes: how many MPC nodes.
            netns: each node in its own network namespace (parties/netns.sh made them).
            netns_prefix: the namespaces' names are PREFIX-node<i>.
            subnet: the namespaces' /24 (three octets).
            daemon_args: added to every node's and the broker's command line (e.g. --log-level debug).
        """
        self.dir = os.path.abspath(directory)
        self.daemon_args = list(daemon_args)
        self.metrics: dict[str, str] = {}  # broker, node0, ...: "host:port" of GET /metrics (create with metrics)
        self.nodes = nodes
        self.netns = netns
        self.netns_prefix, self.subnet = netns_prefix, subnet
        self.keys = os.path.join(self.dir, 'keys')
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.offsets: dict[str, int] = {}  # name -> log size when last started (a restart appends)

    @property
    def broker_config(self) -> str:
        """The broker's config file."""
        return os.path.join(self.dir, 'broker.toml')

    def node_config(self, index: int) -> str:
        """Node index's config file.

        Args:
            index: the node.

        Returns:
            Its path.
        """
        return os.path.join(self.dir, f'node{index}.toml')

    def create(self, participants: Iterable[str] = (), node_options: Mapping[str, object] | None = None,
               delay_ms: int = 0, base_port: int | None = None, metrics: bool = False) -> Self:
        """Fresh keys and configs; participants get keys and are registered.

        Args:
            participants: their names (the retailer is added).
            node_options: more [node] settings, written as `key = value` (TOML values: numbers, booleans).
            delay_ms: node i reaches node j > i (MPyC connects upwards) through a latency proxy
                (start_proxy) that delays by this much.
            base_port: the ports are consecutive from here (None: free ports picked now).
            metrics: the broker and every node serve GET /metrics on 127.0.0.1 (ports after the others).

        Returns:
            This deployment.
        """
        make_private_dir(self.dir)  # keys, configs, logs and every process's state: 0700 / 0600
        hosts = ['127.0.0.1', 'localhost'] + (
            [netns_address(i, self.subnet) for i in range(self.nodes)] if self.netns else [])
        keys.create_ca(self.keys)
        for i in range(self.nodes):
            keys.create_node(self.keys, i, hosts)
        keys.create_broker(self.keys)
        for client in ('submitter', 'operator', RETAILER):
            keys.create_client(self.keys, client)
        keys.create_participants(self.keys, sorted(set(participants) | {RETAILER}))  # the retailer's view: its key
        count = 1 + 2 * self.nodes + self.nodes * self.nodes
        if metrics:
            count += 1 + self.nodes
        if base_port:  # broker, node gRPC ports, MPyC ports, proxies: consecutive from base_port
            broker_port, *ports = range(base_port, base_port + count)
        else:
            broker_port, *ports = free_ports(count)
        grpc_hosts = [netns_address(i, self.subnet) if self.netns else '127.0.0.1' for i in range(self.nodes)]
        grpc = [f'{h}:{p}' for h, p in zip(grpc_hosts, ports[:self.nodes], strict=True)]
        mpc = [f'{h}:{p}' for h, p in zip(grpc_hosts, ports[self.nodes:2 * self.nodes], strict=True)]
        self.proxy_routes: list[str] = []
        proxy_ports = iter(ports[2 * self.nodes:])
        views = [list(mpc) for _ in range(self.nodes)]  # node i's list of MPyC addresses
        if delay_ms:
            for i in range(self.nodes):
                for j in range(i + 1, self.nodes):
                    port = next(proxy_ports)
                    self.proxy_routes.append(f'{port}:{mpc[j].rsplit(":", 1)[0]}:{mpc[j].rsplit(":", 1)[1]}')
                    views[i][j] = f'127.0.0.1:{port}'
        self.delay_ms = delay_ms
        self.broker_address = f'127.0.0.1:{broker_port}'
        if metrics:
            names = ['broker'] + [f'node{i}' for i in range(self.nodes)]
            self.metrics = {name: f'127.0.0.1:{port}' for name, port in zip(names, ports[-len(names):], strict=True)}
        metrics_line = {name: f'metrics = "{address}"\n' for name, address in self.metrics.items()}
        # what participants trust about the nodes (not the broker's word): m, t, addresses, signing keys
        write_manifest(self.keys, manifest_from_keys(self.keys, [[address] for address in grpc]))
        deployment = f'\n[deployment]\nnodes = {_toml_list(grpc)}\nmpc = {_toml_list(mpc)}\n'
        self._write_proxy_routes()
        with open(self.broker_config, 'w') as f:
            f.write(f'[broker]\nlisten = "{self.broker_address}"\ndata_dir = "broker"\nkeys = "keys"\n'
                    f'operators = ["operator"]\npoll_s = 0.2\n{metrics_line.get("broker", "")}{deployment}')
        extra = ''.join(f'{k} = {v}\n' for k, v in (node_options or {}).items())
        for i in range(self.nodes):
            with open(self.node_config(i), 'w') as f:
                f.write(f'[node]\nindex = {i}\nlisten = "{grpc[i]}"\ndata_dir = "node{i}"\nkeys = "keys"\n{extra}'
                        f'{metrics_line.get(f"node{i}", "")}'
                        f'\n[deployment]\nnodes = {_toml_list(grpc)}\nmpc = {_toml_list(views[i])}\n')
        return self

    def _write_proxy_routes(self) -> None:
        with open(os.path.join(self.dir, 'proxy.routes'), 'w') as f:
            f.write(f'{self.delay_ms}\n' + '\n'.join(self.proxy_routes) + '\n')

    def start_proxy(self) -> None:
        """Start the latency proxy between nodes, when the deployment was created with delay_ms.

        Raises:
            OSError: there is no proxy.routes (the deployment was not created).
        """
        with open(os.path.join(self.dir, 'proxy.routes')) as f:
            delay, *routes = f.read().split()
        if routes:
            self._start('proxy', [], module=['-m', 'mpc_market.net.latency_proxy', '--delay-ms', delay, *routes])

    def load(self) -> Self:
        """Read the broker address (and metrics addresses) of an existing deployment directory.

        Returns:
            This deployment.

        Raises:
            InputError: the broker's config, or a node's that exists, is unreadable or invalid.
        """
        from .config import load_broker_config, load_node_config
        broker = load_broker_config(self.broker_config)
        self.broker_address = broker.listen
        addresses = {'broker': broker.metrics, **{f'node{i}': load_node_config(self.node_config(i)).metrics
                                                  for i in range(self.nodes) if os.path.exists(self.node_config(i))}}
        self.metrics = {name: address for name, address in addresses.items() if address}
        return self

    def _start(self, name: str, argv: list[str], netns: str | None = None, env: Mapping[str, str] | None = None,
               module: list[str] | None = None) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.dir, f'{name}.log'), 'a')
        self.offsets[name] = log.tell()
        prefix = ['ip', 'netns', 'exec', netns] if netns else []
        env = with_single_threaded_blas({**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})})
        self.procs[name] = subprocess.Popen(prefix + [sys.executable, *(module or ['-m', 'mpc_market', *argv])],
                                            stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, env=env)
        log.close()
        return self.procs[name]

    def start_node(self, index: int, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start node index (in its namespace with netns), logging to node<index>.log.

        Args:
            index: the node.
            env: more environment variables for its process.

        Returns:
            Its process.
        """
        netns = f'{self.netns_prefix}-node{index}' if self.netns else None
        return self._start(f'node{index}', ['node', '--config', self.node_config(index), *self.daemon_args], netns, env)

    def start_broker(self, http: str | None = None) -> subprocess.Popen[bytes]:
        """Start the broker, logging to broker.log.

        Args:
            http: also serve the operator page on this "host:port".

        Returns:
            Its process.
        """
        return self._start('broker', ['broker', '--config', self.broker_config, *self.daemon_args]
                           + (['--http', http] if http else []))

    def start(self, timeout: float = 30, http: str | None = None) -> Self:
        """Start the proxy (if any), every node and the broker, and wait until they listen.

        Args:
            timeout: seconds to wait for all of them.
            http: the broker's operator page's "host:port" (None: no page).

        Returns:
            This deployment.

        Raises:
            Unreachable: a process ended or did not listen in time.
        """
        self.start_proxy()
        for i in range(self.nodes):
            self.start_node(i)
        self.start_broker(http)
        self.wait_ready(timeout)
        return self

    def last_log_line(self, name: str) -> str:
        """The last line the process logged since it was last started ('' if none).

        Args:
            name: 'broker', 'node0', ... or 'proxy'.

        Returns:
            The line, stripped and cut to 300 characters.
        """
        try:
            with open(os.path.join(self.dir, f'{name}.log'), errors='replace') as f:
                f.seek(self.offsets.get(name, 0))
                lines = [line.strip() for line in f.read().splitlines() if line.strip()]
        except OSError:
            return ''
        return lines[-1][:300] if lines else ''

    def exit_reason(self, name: str) -> str:
        """Why a process that ended did: its exit status or signal, and its last log line.

        Args:
            name: a process of procs that has exited.

        Returns:
            e.g. 'exited with status 1; last log line: ...' or 'killed by signal SIGKILL; ...'.
        """
        import signal
        code = self.procs[name].poll()
        if code is None:
            return 'still running'
        if code < 0:
            try:
                how = f'killed by signal {signal.Signals(-code).name}'
            except ValueError:
                how = f'killed by signal {-code}'
        else:
            how = f'exited with status {code}'
        line = self.last_log_line(name)
        return how + (f'; last log line: {line}' if line else '; nothing logged')

    def wait_ready(self, timeout: float = 30, names: Iterable[str] | None = None) -> None:
        """Wait until every (named) process logged that it is listening.

        Args:
            timeout: seconds to wait for all of them.
            names: the processes (None: every started one).

        Raises:
            Unreachable: a process ended or did not listen in time (with its last log lines).
        """
        deadline = time.monotonic() + timeout
        for name in names or list(self.procs):
            proc = self.procs[name]
            while True:
                with open(os.path.join(self.dir, f'{name}.log')) as f:
                    f.seek(self.offsets[name])
                    text = f.read()
                    if 'listening on' in text or 'proxy ready' in text:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    with open(os.path.join(self.dir, f'{name}.log')) as f:
                        tail = f.read().strip().splitlines()[-3:]
                    raise Unreachable(f'{name} did not start: {" | ".join(tail)}')
                time.sleep(0.05)

    def kill(self, name: str, sig: int = 9) -> None:
        """Send a process a signal and wait for it to end; it leaves procs.

        Args:
            name: 'broker', 'node0', ... or 'proxy'.
            sig: the signal (9: SIGKILL).

        Raises:
            KeyError: no such process is running.
        """
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
            proc.wait()

    def stop(self) -> None:
        """Stop every process (SIGTERM) and wait for each."""
        for name in list(self.procs):
            self.kill(name, 15)
