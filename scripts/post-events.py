#!/usr/bin/env python3
# Disk and memory of `strata serve` as a log grows (docs/log.md, "Figures").
# Usage: start `strata serve --addr 127.0.0.1:PORT --data DIR`, then
#   python3 scripts/post-events.py PORT DIR PID [REQUESTS [STREAMS]]
# Writes REQUESTS x 1,000 events of ~250 B through POST /streams/bulk-N
# (1,000 per request, random v4 ids), then reports the event bytes, the data
# directory's size (du -sb, so preallocated space counts) and serve's RSS.
# Run it again against the same server to see the next million.
import http.client, json, os, sys, uuid, subprocess, time
port = int(sys.argv[1]); data = sys.argv[2]; pid = int(sys.argv[3])
requests = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
streams = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) // 1024
def du(path):
    return int(subprocess.check_output(["du", "-sb", path]).split()[0])
c = http.client.HTTPConnection("127.0.0.1", port)
payload_bytes = 0
print("rss before", rss(pid), "MB; dir", du(data) // 2**20, "MiB")
t = time.time()
for r in range(requests):
    events = []
    for i in range(1000):
        d = {"order": r * 1000 + i, "customer": "c-%06d" % (r % 977), "note": "x" * 150, "amount": 1234}
        ev = {"event_id": str(uuid.uuid4()), "event_type": "OrderNoted", "data": d}
        events.append(ev)
        payload_bytes += len(json.dumps(d)) + len("OrderNoted") + 16
    body = json.dumps(events)
    c.request("POST", f"/streams/bulk-{r % streams}", body, {"content-type": "application/json"})
    resp = c.getresponse(); resp.read()
    assert resp.status in (200, 201), (resp.status,)
el = time.time() - t
time.sleep(3)
size = du(data)
print(f"{requests*1000} events in {el:.1f}s ({requests*1000/el:.0f}/s); event bytes (data+type+id) {payload_bytes/2**20:.0f} MiB")
print(f"dir {size/2**20:.0f} MiB = {size/payload_bytes:.2f}x the events; per event {size/(requests*1000):.0f} B")
for sub in sorted(os.listdir(data)):
    print("  ", sub, du(os.path.join(data, sub)) // 2**20, "MiB")
print("rss after", rss(pid), "MB")
