"""moto server, one request at a time.

moto's server is threaded and its DynamoDB UpdateItem ADD is a read-modify-write in Python with no
lock, so concurrent atomic counters lose updates (the storage contract's counter case saw 888 of
900 under load). Real DynamoDB applies ADD atomically. Serialising requests behind one lock gives
the emulator the atomicity the contract checks, while the threaded HTTP server still accepts
every keep-alive connection. Same arguments as `moto_server`.
"""

import threading

import moto.server as server

_lock = threading.Lock()
_run_simple = server.run_simple


def _serial(app):
    def serial_app(environ, start_response):
        with _lock:
            # Consume the whole response inside the lock: moto may do its work lazily.
            return list(app(environ, start_response))

    return serial_app


def _run_simple_serial(host, port, app, **kwargs):
    return _run_simple(host, port, _serial(app), **kwargs)


server.run_simple = _run_simple_serial

if __name__ == "__main__":
    server.main()
