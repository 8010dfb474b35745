#!/usr/bin/python3
"""A WebSocket echo server (python3-websockets) for the gateway tests: ws-echo-server.py PORT NAME.
Every text message comes back as "NAME: message"."""
import asyncio
import sys

import websockets


async def echo(socket, path=None):
    async for message in socket:
        await socket.send(f"{sys.argv[2]}: {message}")


async def main():
    async with websockets.serve(echo, "0.0.0.0", int(sys.argv[1])):
        print("listening", flush=True)
        await asyncio.Future()


asyncio.run(main())
