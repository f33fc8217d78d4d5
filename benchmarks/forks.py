"""``mpc-market`` commands as processes without each one's imports: a server process imports the
command line once and forks one child per command (~0.1 s a command instead of ~0.8 s of imports).
Each child is still a process of its own, with its own output files and exit status; the tests
(tests/helpers.py) and the scenarios benchmark run their commands this way."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what the client commands import lazily (gRPC: 0.26 s of a results fetch's 0.34 s); importing it
# starts no thread, so the server can still fork
PRELOAD = ('mpc_market.net.client', 'mpc_market.net.trusted')


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Batch:
    """One request to fork_server: the commands runs [(argv, stdout file, stderr file)], run in cwd,
    at_once at a time, all of them within timeout seconds."""

    runs: list[tuple[list[str], str, str]]
    cwd: str
    at_once: int
    timeout: float

    def encode(self) -> str:
        """Returns: the batch as one JSON line."""
        return json.dumps({'runs': self.runs, 'cwd': self.cwd, 'at_once': self.at_once,
                           'timeout': self.timeout}) + '\n'

    @classmethod
    def decode(cls, line: str) -> 'Batch':
        """The Batch of a line.

        Args:
            line: a line of encode().

        Returns:
            its Batch.
        """
        data = json.loads(line)
        return cls([(list(map(str, argv)), str(out), str(err)) for argv, out, err in data['runs']],
                   str(data['cwd']), int(data['at_once']), float(data['timeout']))


def fork_server() -> None:
    """The loop of a process that imported the command line once (``python -c 'from benchmarks.forks
    import fork_server; fork_server()'``): per stdin line, a Batch; it forks a child per run, at_once at a
    time, and answers with one JSON line of their exit statuses (-9: killed or never started at the
    timeout). A child is ``mpc-market ARGV`` with its stdout and stderr in the run's files; an uncaught
    exception prints its traceback and exits 1, as the process would. No Python thread runs here and
    gRPC is imported but never started (no channel), so forking is safe although the children use it."""
    import importlib

    from mpc_market.cli.main import main as cli_main
    for module in PRELOAD:
        importlib.import_module(module)
    for line in sys.stdin:
        batch = Batch.decode(line)
        pending, running, codes = list(enumerate(batch.runs)), {}, [-9] * len(batch.runs)
        deadline = time.monotonic() + batch.timeout
        while pending or running:
            while pending and len(running) < batch.at_once:
                i, (argv, out, err) = pending.pop(0)
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        for fd, path in ((1, out), (2, err)):
                            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                            os.dup2(target, fd)
                            os.close(target)
                        os.chdir(batch.cwd)
                        code = cli_main(argv) or 0
                    except SystemExit as exc:
                        code = exc.code if isinstance(exc.code, int) else 1
                    except BaseException:  # noqa: BLE001 - the interpreter's own last resort
                        traceback.print_exc()
                    finally:
                        sys.stdout.flush()
                        sys.stderr.flush()
                        os._exit(code)
                running[pid] = i
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid:
                codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                for pid in running:
                    os.kill(pid, signal.SIGKILL)
                pending = []  # the time is up for these too: never started, -9
            else:
                time.sleep(0.005)
        print(json.dumps(codes), flush=True)


class CliProcesses:
    """``mpc-market`` commands as processes, each a fork of one fork_server; stop() ends the server.
    The commands get this process's environment as it is when the server starts."""

    def __init__(self) -> None:
        # the server imports benchmarks.forks from the checkout (not installed) wherever it is started
        path = os.pathsep.join(p for p in (REPO, os.environ.get('PYTHONPATH', '')) if p)
        code = 'from benchmarks.forks import fork_server; fork_server()'
        self.server = subprocess.Popen([sys.executable, '-c', code],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
                                       env=dict(os.environ, PYTHONPATH=path))

    def run(self, argvs: dict, cwd, at_once: int = 4, timeout: float = 60) -> dict:
        """Run every ``mpc-market ARGV`` of argvs, at_once at a time.

        Args:
            argvs: {key: argv}.
            cwd: every command's working directory.
            at_once: commands running at the same time.
            timeout: seconds for all of them; a command still running then is killed (exit -9).

        Returns:
            {key: CliResult}.

        Raises:
            RuntimeError: the server is gone (stopped, or it died).
        """
        keys = list(argvs)
        with tempfile.TemporaryDirectory() as tmp:
            runs = [([str(a) for a in argvs[key]], os.path.join(tmp, f'{i}.out'), os.path.join(tmp, f'{i}.err'))
                    for i, key in enumerate(keys)]
            try:
                self.server.stdin.write(Batch(runs, str(cwd), at_once, timeout).encode())
                self.server.stdin.flush()
                answer = self.server.stdout.readline()
            except (BrokenPipeError, ValueError) as exc:  # ValueError: stdin closed by stop()
                raise RuntimeError(f'the fork server is gone: {exc}') from exc
            if not answer:
                raise RuntimeError(f'the fork server exited ({self.server.poll()})')
            results = {}
            for key, code, (_, out, err) in zip(keys, json.loads(answer), runs, strict=True):
                results[key] = CliResult(code, _text(out), _text(err))
        return results

    def stop(self) -> None:
        """End the server (again: nothing)."""
        if not self.server.stdin.closed:
            self.server.stdin.close()
        self.server.wait(30)
        self.server.stdout.close()


def _text(path):
    """A command's output file, '' if the command never started."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ''
