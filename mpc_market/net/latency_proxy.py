"""A TCP forwarder that adds a fixed one-way delay, for rehearsing WAN latency between nodes
where netem (tc) is unavailable. Bytes are forwarded unchanged (MPyC's TLS stays end to end)
and in order; each chunk leaves `delay` seconds after it arrived, so throughput is not capped.

    python -m mpc_market.net.latency_proxy --delay-ms 10 LISTEN_PORT:TARGET_HOST:TARGET_PORT ...
"""

import argparse
import asyncio
from collections.abc import Sequence


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()  # (when to send, chunk; b'' = end)

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()
    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(1 << 16):
            queue.put_nowait((loop.time() + delay, data))
    except ConnectionError:
        pass
    queue.put_nowait((loop.time() + delay, b''))
    try:
        await sender
    except ConnectionError:
        pass


async def _serve(listen_port: int, host: str, port: int, delay: float) -> asyncio.Server:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, target_writer, delay), _pipe(target_reader, client_writer, delay))
    return await asyncio.start_server(handle, '127.0.0.1', listen_port)


async def _main(routes: Sequence[Sequence[str]], delay: float) -> None:
    servers = [await _serve(int(lp), host, int(port), delay) for lp, host, port in routes]
    print('proxy ready', flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: Sequence[str] | None = None) -> None:
    """Forward every LISTEN_PORT:TARGET_HOST:TARGET_PORT route with the delay until killed.

    Args:
        argv: the command line (default sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(prog='mpc_market.net.latency_proxy')
    parser.add_argument('--delay-ms', type=float, required=True)
    parser.add_argument('routes', nargs='+', help='LISTEN_PORT:TARGET_HOST:TARGET_PORT')
    args = parser.parse_args(argv)
    asyncio.run(_main([r.split(':') for r in args.routes], args.delay_ms / 1000))


if __name__ == '__main__':
    main()
