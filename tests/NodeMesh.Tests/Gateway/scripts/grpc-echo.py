#!/usr/bin/python3
"""gRPC for the gateway tests (python3-grpcio, raw bytes: no .proto needed).
  grpc-echo.py serve PORT NAME         a server: /test.Echo/Say answers "NAME: <request>", /test.Echo/Stream
                                       streams three answers, /test.Echo/Fail fails with NOT_FOUND
  grpc-echo.py call HOST:PORT AUTHORITY  calls all three through HOST:PORT (cleartext HTTP/2) with that :authority
                                       and prints "say=<answer> stream=<count> fail=<status code name>"."""
import sys
from concurrent import futures

import grpc


def serve(port, name):
    def say(request, context):
        return f"{name}: {request.decode()}".encode()

    def stream(request, context):
        for i in range(3):
            yield f"{name}: {request.decode()} #{i}".encode()

    def fail(request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"0.0.0.0:{port}")
    server.start()
    print("listening", flush=True)
    server.wait_for_termination()


def call(target, authority):
    with grpc.insecure_channel(target, options=[("grpc.default_authority", authority)]) as channel:
        say = channel.unary_unary("/test.Echo/Say")(b"hello", timeout=10).decode()
        count = sum(1 for _ in channel.unary_stream("/test.Echo/Stream")(b"hi", timeout=10))
        try:
            channel.unary_unary("/test.Echo/Fail")(b"x", timeout=10)
            failed = "OK"
        except grpc.RpcError as e:
            failed = e.code().name
        print(f"say={say.replace(' ', '_')} stream={count} fail={failed}", flush=True)


if sys.argv[1] == "serve":
    serve(int(sys.argv[2]), sys.argv[3])
else:
    call(sys.argv[2], sys.argv[3])
