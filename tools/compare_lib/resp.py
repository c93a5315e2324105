"""A small client of Redis's protocol (RESP2) for the checked session:
sends commands in pipelined batches and renders every reply as text, so
two sessions can be compared line by line."""

import socket


def encode(args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        data = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Connection:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self, indent=""):
        """The next reply as text lines (nested arrays indented)."""
        line = self._line()
        kind, rest = line[:1], line[1:].decode(errors="replace")
        if kind == b"+":
            return [indent + rest]
        if kind == b"-":
            return [indent + "(error) " + rest]
        if kind == b":":
            return [indent + "(integer) " + rest]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return [indent + "(nil)"]
            return [indent + self._exact(n).decode(errors="replace")]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return [indent + "(nil array)"]
            lines = [indent + "(array %d)" % n]
            for _ in range(n):
                lines += self.reply(indent + "  ")
            return lines
        raise ConnectionError("unexpected reply %r" % line[:40])

    def session(self, commands, batch=500):
        """Sends COMMANDS (lists of arguments) BATCH at a time, each batch
        written whole before its replies are read; returns the replies."""
        lines = []
        for i in range(0, len(commands), batch):
            chunk = commands[i:i + batch]
            self.sock.sendall(b"".join(encode(c) for c in chunk))
            for _ in chunk:
                lines += self.reply()
        return lines
