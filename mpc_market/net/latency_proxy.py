"""A TCP forwarder that adds a fixed one-way delay, for rehearsing WAN latency between nodes
where netem (tc) is unavailable. Bytes are forwarded unchanged (MPyC's TLS stays end to end)
and in order; each chunk leaves `delay` seconds after it arrived, so throughput is not capped.

    python -m mpc_market.net.latency_proxy --delay-ms 10 LISTEN_PORT:TARGET_HOST:TARGET_PORT ...
"""

import argparse
import asyncio


async def _pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def send():
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


async def _serve(listen_port, host, port, delay):
    async def handle(client_reader, client_writer):
        try:
            target_reader, target_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, target_writer, delay), _pipe(target_reader, client_writer, delay))
    return await asyncio.start_server(handle, '127.0.0.1', listen_port)


async def _main(routes, delay):
    servers = [await _serve(int(lp), host, int(port), delay) for lp, host, port in routes]
    print('proxy ready', flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv=None):
    parser = argparse.ArgumentParser(prog='mpc_market.net.latency_proxy')
    parser.add_argument('--delay-ms', type=float, required=True)
    parser.add_argument('routes', nargs='+', help='LISTEN_PORT:TARGET_HOST:TARGET_PORT')
    args = parser.parse_args(argv)
    asyncio.run(_main([r.split(':') for r in args.routes], args.delay_ms / 1000))


if __name__ == '__main__':
    main()
