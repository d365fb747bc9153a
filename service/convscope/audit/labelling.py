"""`convscope label DATASET --out human.csv`: a local page for people to label images the way
Karpathy (2014) measured a human on ILSVRC — see the image, type to search the label names,
pick up to five, all from the keyboard — writing the CSV that `convscope audit --human` reads.

Every answer is written to the CSV at once (atomically), so closing the page loses nothing and
reopening it resumes at the first unlabelled image. The page is one inline document served on
127.0.0.1; it loads nothing from elsewhere, and the dataset's own labels are never sent to it.
"""

from __future__ import annotations

import argparse
import csv
import json
import mimetypes
import os
import sys
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import onnx

from convscope.audit.dataset import IMAGE_SUFFIXES
from convscope.audit.human import HEADER
from convscope.runtime.ingest import LABELS_KEY

MAX_PICKS = 5
MAX_BODY_BYTES = 1 << 16


def images_of(dataset: Path) -> list[Path]:
    """The images to label, as absolute paths (the CSV must name them wherever it is read):
    every image under a folder (sorted), or the ``path`` column of a CSV."""
    dataset = dataset.resolve()
    if dataset.is_dir():
        return sorted(p for p in dataset.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    with dataset.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        return [Path(row[0]) if Path(row[0]).is_absolute() else dataset.parent / row[0] for row in reader if row]


def label_names(model: Path | None, labels_file: Path | None) -> list[str]:
    if labels_file is not None:
        return [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
    if model is not None:
        for prop in onnx.load(str(model), load_external_data=False).metadata_props:
            if prop.key == LABELS_KEY:
                return [str(name) for name in json.loads(prop.value)]
        raise ValueError(f"{model} has no {LABELS_KEY} metadata: pass --labels with one name per line")
    raise ValueError("the page needs label names: --model MODEL.onnx (its metadata) or --labels FILE")


class LabellingSession:
    """The images, the names, and the answers so far, kept in step with the CSV."""

    def __init__(self, images: Sequence[Path], names: Sequence[str], out: Path, labeller: str) -> None:
        self.images = list(images)
        self.names = list(names)
        self.out = out
        self.labeller = labeller
        self.lock = threading.Lock()
        self.answers: dict[int, list[str]] = {}
        self.others: list[list[str]] = []  # rows of other labellers in the same file, kept as they are
        if out.exists():
            self._load()

    def _load(self) -> None:
        index_of = {str(path): index for index, path in enumerate(self.images)}
        with self.out.open(newline="") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for row in reader:
                if row and row[1] == self.labeller and row[0] in index_of:
                    self.answers[index_of[row[0]]] = [value for value in row[2:] if value]
                elif row:
                    self.others.append(row)

    def state(self) -> dict[str, object]:
        with self.lock:
            done = {str(index): picks for index, picks in self.answers.items()}
        pending = next((i for i in range(len(self.images)) if i not in self.answers), len(self.images))
        return {
            "names": self.names,
            "images": len(self.images),
            "done": done,
            "next": pending,
            "labeller": self.labeller,
            "max_picks": MAX_PICKS,
        }

    def answer(self, index: int, picks: Sequence[str]) -> None:
        if not 0 <= index < len(self.images):
            raise ValueError(f"no image {index}")
        unknown = [pick for pick in picks if pick not in self.names]
        if not picks or len(picks) > MAX_PICKS or unknown:
            raise ValueError(f"pick 1 to {MAX_PICKS} of the label names (unknown: {unknown})")
        with self.lock:
            self.answers[index] = list(picks)
            self._write()

    def _write(self) -> None:
        temporary = self.out.with_suffix(self.out.suffix + ".partial")
        with temporary.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            writer.writerows(self.others)
            for index in sorted(self.answers):
                picks = self.answers[index]
                writer.writerow([str(self.images[index]), self.labeller, *picks, *[""] * (MAX_PICKS - len(picks))])
        os.replace(temporary, self.out)


def handler_for(session: LabellingSession) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass  # one line per image fetch would drown the terminal

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, value: object, status: HTTPStatus = HTTPStatus.OK) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/":
                self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
            elif self.path == "/state":
                self._json(session.state())
            elif self.path.startswith("/image/") and self.path[7:].isdigit() and int(self.path[7:]) < len(session.images):
                path = session.images[int(self.path[7:])]
                self._send(HTTPStatus.OK, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream")
            else:
                self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/answer" or length > MAX_BODY_BYTES:
                self._json({"error": "POST /answer with a small JSON body"}, HTTPStatus.BAD_REQUEST)
                return
            try:
                body = json.loads(self.rfile.read(length))
                session.answer(int(body["index"]), [str(pick) for pick in body["picks"]])
            except (ValueError, KeyError, TypeError) as error:
                self._json({"error": str(error)}, HTTPStatus.BAD_REQUEST)
                return
            self._json(session.state())

    return Handler


def serve(session: LabellingSession, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A started server (on a thread); ``server.server_address`` says where, ``shutdown()`` stops it."""
    server = ThreadingHTTPServer((host, port), handler_for(session))
    threading.Thread(target=server.serve_forever, name="convscope-label", daemon=True).start()
    return server


def run(args: argparse.Namespace) -> int:
    """`convscope label` (arguments in audit/cli.py): serves the page until Ctrl-C; 2 on bad input."""
    try:
        if not args.dataset.exists():
            raise ValueError(f"no such file: {args.dataset}")
        session = LabellingSession(images_of(args.dataset), label_names(args.model, args.labels), args.out, args.labeller)
        server = serve(session, port=args.port)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(
        f"labelling {len(session.images)} images ({len(session.answers)} done): open http://{host}:{port}/ ; Ctrl-C to stop",
        file=sys.stderr,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


PAGE = """<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>convscope label</title><style>
body{font:16px system-ui,sans-serif;margin:2em auto;max-width:720px;color:#222}
#image{width:288px;height:288px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccc;background:#eee}
#search{font-size:18px;width:20em;padding:4px}ol#matches{min-height:8em}li.on{background:#ddeeff}
.pick{display:inline-block;background:#4a78b5;color:#fff;padding:2px 8px;margin:2px;border-radius:4px}
#help{color:#666;font-size:13px}</style></head><body>
<h1>Label the image</h1><p id=progress></p><img id=image alt="the image to label">
<p>Your picks (best first): <span id=picks></span></p>
<input id=search autocomplete=off placeholder="type to search the label names" autofocus>
<ol id=matches></ol>
<p id=help>Type to search · ↑/↓ choose · Enter adds the choice (up to 5) · Backspace in an empty box removes the
last pick · Enter in an empty box saves and shows the next image · ←/→ in an empty box go back and forth.</p>
<script>
let state = null, index = 0, picks = [], matches = [], chosen = 0;
const $ = id => document.getElementById(id);
async function load() { state = await (await fetch('/state')).json(); show(state.next); }
function show(i) {
  index = Math.max(0, Math.min(i, state.images - 1));
  picks = (state.done[index] || []).slice();
  $('search').value = ''; update();
  $('image').src = '/image/' + index;
  draw();
}
function update() {
  const text = $('search').value.trim().toLowerCase();
  matches = text ? state.names.filter(n => n.toLowerCase().includes(text) && !picks.includes(n))
                 .sort((a, b) => a.toLowerCase().indexOf(text) - b.toLowerCase().indexOf(text)).slice(0, 10) : [];
  chosen = 0; draw();
}
function draw() {
  const done = Object.keys(state.done).length;
  $('progress').textContent = `image ${index + 1} of ${state.images} · ${done} labelled` + (done >= state.images ? ' · all done' : '');
  $('picks').innerHTML = picks.map(p => `<span class=pick>${p.replace(/</g, '&lt;')}</span>`).join('') || '—';
  $('matches').innerHTML = matches.map((m, i) => `<li class="${i === chosen ? 'on' : ''}">${m.replace(/</g, '&lt;')}</li>`).join('');
}
async function save() {
  const reply = await fetch('/answer', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                        body: JSON.stringify({index: index, picks: picks})});
  state = await reply.json();
  show(state.next > index ? state.next : index + 1);
}
$('search').addEventListener('input', update);
$('search').addEventListener('keydown', event => {
  const empty = $('search').value === '';
  if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    chosen = (chosen + (event.key === 'ArrowDown' ? 1 : -1) + matches.length) % Math.max(1, matches.length); draw();
  } else if (event.key === 'Enter' && !empty) {
    if (matches.length && picks.length < state.max_picks) { picks.push(matches[chosen]); $('search').value = ''; update(); }
  } else if (event.key === 'Enter' && picks.length) { save();
  } else if (event.key === 'Backspace' && empty) { picks.pop(); draw();
  } else if ((event.key === 'ArrowLeft' || event.key === 'ArrowRight') && empty) {
    show(index + (event.key === 'ArrowRight' ? 1 : -1));
  } else { return; }
  event.preventDefault();
});
load();
</script></body></html>"""
