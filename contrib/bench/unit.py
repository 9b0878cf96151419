"""A minimal unit for the benchmarks (run with python -S): optional ready delay, optional
HTTP port answering 200, READY=1 on $NOTIFY_SOCKET, then idle until signalled."""

import os
import selectors
import socket
import time

delay = float(os.environ.get("UNIT_READY_DELAY", "0"))
port = int(os.environ.get("UNIT_PORT", "0"))
if delay:
    # the delay counts from this process's creation, so that it is the unit's own start time
    with open("/proc/self/stat") as f:
        started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as f:
        age = float(f.read().split()[0]) - started
    time.sleep(max(0.0, delay - age))
selector = selectors.DefaultSelector()
if port:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)
    selector.register(server, selectors.EVENT_READ)
address = os.environ.get("NOTIFY_SOCKET")
if address:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", address)
while True:
    if not port:
        time.sleep(3600)
        continue
    for _key, _ in selector.select():
        conn, _ = server.accept()
        conn.settimeout(1)
        try:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        except OSError:
            pass
        conn.close()
