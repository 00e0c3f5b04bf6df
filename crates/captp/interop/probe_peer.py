#!/usr/bin/env python3
"""A peer for captp's interop tests, on pycapnp (the C++ Cap'n Proto RPC implementation).

It speaks the test interface `Probe` of crates/captp/schema/probe.capnp, loaded at run time.

    probe_peer.py server PORT_FILE
        Listens on 127.0.0.1 (a free port, written to PORT_FILE once listening) and serves a
        Probe as the bootstrap capability of the first connection. Each Probe records the order
        in which calls reach it. When the client disconnects it prints every probe's arrivals,
        checks that the calls made through each reference arrived in the order they were made
        (E-order) and exits 0, or 1 if they did not.

    probe_peer.py client PORT
        Connects to 127.0.0.1:PORT, takes the bootstrap Probe and makes calls on it, many of
        them pipelined (made on answers that have not come back yet), then checks the answers.
        Prints one PASS or FAIL line per check and a summary; exits 0 only if every check
        passed.

Both modes give up after PROBE_PEER_TIMEOUT seconds (default 30) and exit non-zero, so a hung
peer fails a test instead of hanging it.

Written for this project; the pycapnp version is pinned by scripts/pycapnp-env.sh.
"""

import asyncio
import os
import sys
import traceback

import capnp

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schema", "probe.capnp")
probe_capnp = capnp.load(SCHEMA)
TIMEOUT = float(os.environ.get("PROBE_PEER_TIMEOUT", "30"))
HOST = "127.0.0.1"


def say(*parts):
    print(*parts, flush=True)


class RecordingProbe(probe_capnp.Probe.Server):
    """A Probe that records the calls reaching it, in arrival order.

    `call` answers with n = the number of calls (of either method) that arrived before it, and
    cap = the `arg` it was given, or a new RecordingProbe when `arg` is null.
    `getCallSequence` answers with that same count.
    """

    def __init__(self, name, everyone):
        self.name = name
        self.arrivals = []  # ("call", ref, seq) or ("getCallSequence", expected)
        self.everyone = everyone
        everyone.append(self)

    async def call(self, ref, seq, arg, _context, **kwargs):
        n = len(self.arrivals)
        self.arrivals.append(("call", ref, seq))
        if _context.params._has("arg"):
            cap = arg
        else:
            cap = RecordingProbe(f"{self.name}/{n}", self.everyone)
        return n, cap

    async def getCallSequence(self, expected, _context, **kwargs):
        n = len(self.arrivals)
        self.arrivals.append(("getCallSequence", expected))
        return n

    def order_violations(self):
        """The calls that arrived after a later call made through the same reference."""
        last_seq = {}
        bad = []
        for arrival in self.arrivals:
            if arrival[0] != "call":
                continue
            _, ref, seq = arrival
            if ref in last_seq and seq <= last_seq[ref]:
                bad.append(f"ref {ref}: seq {seq} arrived after seq {last_seq[ref]}")
            last_seq[ref] = seq
        return bad


# ---------------------------------------------------------------------------------------------
# Server mode.


async def serve(port_file):
    everyone = []
    bootstrap = RecordingProbe("bootstrap", everyone)
    finished = asyncio.get_running_loop().create_future()

    async def on_connection(stream):
        if finished.done():
            return
        server = capnp.TwoPartyServer(stream, bootstrap=bootstrap)
        try:
            await server.on_disconnect()
        except Exception as e:  # the client going away abruptly is still the end
            say(f"connection ended with {type(e).__name__}: {e}")
        if not finished.done():
            finished.set_result(None)

    listener = await capnp.AsyncIoStream.create_server(on_connection, HOST, 0)
    port = listener.sockets[0].getsockname()[1]
    # Written whole, then renamed, so that a reader never sees half a number.
    with open(port_file + ".tmp", "w") as f:
        f.write(f"{port}\n")
    os.replace(port_file + ".tmp", port_file)
    say(f"listening on {HOST}:{port}")
    async with listener:
        await asyncio.wait_for(finished, TIMEOUT)

    violations = []
    for probe in everyone:
        say(f"probe {probe.name}: {probe.arrivals}")
        violations += [f"{probe.name}: {v}" for v in probe.order_violations()]
    for v in violations:
        say(f"ORDER VIOLATION {v}")
    if violations:
        return 1
    say("ORDER OK")
    return 0


# ---------------------------------------------------------------------------------------------
# Client mode.


class Checks:
    def __init__(self):
        self.failed = 0
        self.total = 0

    def check(self, name, ok, detail=""):
        self.total += 1
        if ok:
            say(f"PASS {name}")
        else:
            self.failed += 1
            say(f"FAIL {name} {detail}")


async def run_client(port):
    stream = await capnp.AsyncIoStream.create_connection(host=HOST, port=port)
    client = capnp.TwoPartyClient(stream)
    boot = client.bootstrap().cast_as(probe_capnp.Probe)
    checks = Checks()

    # Calls on the bootstrap promise, and calls pipelined on the answer to the first one; none of
    # them waits for anything before it is sent.
    first = boot.call(ref=1, seq=0)
    second = boot.call(ref=1, seq=1)
    first_cap = first.cap
    piped = [first_cap.call(ref=2, seq=0), first_cap.call(ref=2, seq=1)]
    # Two levels deep: a call on the `cap` of a call that is itself pipelined.
    deeper = piped[0].cap.call(ref=3, seq=0)
    r_first, r_second, r_p0, r_p1, r_deeper = await asyncio.gather(
        first, second, piped[0], piped[1], deeper
    )
    checks.check("bootstrap call 1/0 arrived first", r_first.n == 0, f"n={r_first.n}")
    checks.check("bootstrap call 1/1 arrived second", r_second.n == 1, f"n={r_second.n}")
    checks.check("pipelined call 2/0 arrived first at its probe", r_p0.n == 0, f"n={r_p0.n}")
    checks.check("pipelined call 2/1 arrived second at its probe", r_p1.n == 1, f"n={r_p1.n}")
    checks.check("two-level pipelined call 3/0 arrived", r_deeper.n == 0, f"n={r_deeper.n}")

    s = await boot.getCallSequence(expected=2)
    checks.check("bootstrap saw 2 calls before getCallSequence", s.n == 2, f"n={s.n}")
    s = await r_first.cap.getCallSequence(expected=2)
    checks.check("pipelined probe saw 2 calls before getCallSequence", s.n == 2, f"n={s.n}")
    s = await r_p0.cap.getCallSequence(expected=1)
    checks.check("two-level probe saw 1 call before getCallSequence", s.n == 1, f"n={s.n}")

    # A capability of ours goes out as `arg` and comes back as `cap`: calls on it stay here.
    everyone = []
    mine = RecordingProbe("client-local", everyone)
    echoed = await boot.call(ref=1, seq=2, arg=mine)
    checks.check("bootstrap call 1/2 arrived fourth", echoed.n == 3, f"n={echoed.n}")
    r = await echoed.cap.call(ref=4, seq=0)
    checks.check(
        "the echoed capability is our own object",
        r.n == 0 and mine.arrivals == [("call", 4, 0)],
        f"n={r.n} arrivals={mine.arrivals}",
    )

    # A burst of calls on the bootstrap capability itself (no longer a promise).
    burst = [boot.call(ref=5, seq=i) for i in range(8)]
    answers = await asyncio.gather(*burst)
    ns = [a.n for a in answers]
    checks.check("a burst of 8 calls arrived in order", ns == list(range(4, 12)), f"n={ns}")
    s = await boot.getCallSequence(expected=12)
    checks.check("bootstrap saw 12 calls in all", s.n == 12, f"n={s.n}")

    if checks.failed:
        say(f"FAIL {checks.failed} of {checks.total} checks failed")
        return 1
    say(f"PASS all {checks.total} checks")
    return 0


# ---------------------------------------------------------------------------------------------


async def main(argv):
    if len(argv) != 3 or argv[1] not in ("server", "client"):
        say(__doc__)
        return 2
    if argv[1] == "server":
        work = serve(argv[2])
    else:
        work = run_client(int(argv[2]))
    try:
        async with capnp.kj_loop():
            return await asyncio.wait_for(work, TIMEOUT)
    except asyncio.TimeoutError:
        say(f"FAIL timed out after {TIMEOUT} s")
        return 3
    except Exception:
        say("FAIL " + traceback.format_exc().replace("\n", "\n     "))
        return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv)))
