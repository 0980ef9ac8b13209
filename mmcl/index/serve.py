"""`mmcl serve`: the champion's index over HTTP on 127.0.0.1 (standard library server, one thread per request).

    GET  /                                    one HTML page: text box, file upload, thumbnails, audio players
    GET  /api/info                            champion id, dataset md5, item counts
    GET  /api/search?text=...&k=10[&in=image,audio]
    POST /api/search?modality=image|audio&k=10&name=<file name>   body: the file's bytes
    GET  /media/<modality>/<row>              an indexed item's file (only files inside the indexed dataset)

Bad queries get 4xx with {"error": "..."}: empty text, unknown modality, a file that does not decode as an
image or audio (415), a body over MAX_UPLOAD (413). A champion without a current index answers 503 (stale).
"""

from __future__ import annotations

import json
import mimetypes
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mmcl.errors import DataError, UserError
from mmcl.index.query import QueryError
from mmcl.index.search import ChampionSearcher
from mmcl.index.store import StaleIndex

MAX_UPLOAD = 20 * 1024 * 1024  # bytes: a photo or a minute of speech, well under
MAX_K = 100
PAGE = (Path(__file__).with_name("page.html")).read_text(encoding="utf-8")


class BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _k(params: dict[str, list[str]]) -> int:
    raw = params.get("k", ["10"])[0]
    try:
        k = int(raw)
    except ValueError:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"k must be an integer, got {raw!r}") from None
    if not 1 <= k <= MAX_K:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _galleries(params: dict[str, list[str]]) -> list[str] | None:
    raw = params.get("in", [""])[0]
    return [m for m in raw.split(",") if m] or None


def make_handler(searcher: ChampionSearcher) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "mmcl-serve"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            pass  # quiet: tests and benchmarks issue thousands of requests

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def _guard(self, handler) -> None:
            try:
                handler()
            except BadRequest as exc:
                self._json(exc.status, {"error": str(exc)})
            except DataError as exc:  # the decoders' message, about the upload rather than our temp file
                self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": f"the uploaded file: {exc.reason}"})
            except StaleIndex as exc:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
            except (QueryError, UserError) as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._guard(self._get)

        def do_POST(self) -> None:  # noqa: N802
            self._guard(self._post)

        def _get(self) -> None:
            url = urlsplit(self.path)
            params = parse_qs(url.query, keep_blank_values=True)
            if url.path == "/":
                self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
            elif url.path == "/api/info":
                index, _, champion = searcher.current()
                self._json(HTTPStatus.OK, {"champion": champion["id"], **{k: index.meta[k] for k in (
                    "dataset_md5", "counts", "dim", "built_at", "build_seconds")}})
            elif url.path == "/api/search":
                if "text" not in params:
                    raise BadRequest(HTTPStatus.BAD_REQUEST, "GET /api/search needs ?text=...; images and audio "
                                                             "are POSTed (?modality=image|audio, body: the file)")
                self._json(HTTPStatus.OK, searcher.search("text", params["text"][0], _k(params), _galleries(params)))
            elif url.path.startswith("/media/"):
                parts = url.path.split("/")
                if len(parts) != 4 or not parts[3].isdigit():
                    raise BadRequest(HTTPStatus.NOT_FOUND, f"{url.path}: expected /media/<modality>/<row>")
                index, _, _ = searcher.current()
                try:
                    path = index.media_path(parts[2], int(parts[3]))
                except UserError as exc:
                    raise BadRequest(HTTPStatus.NOT_FOUND, str(exc)) from None
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                self._send(HTTPStatus.OK, path.read_bytes(), kind)
            else:
                raise BadRequest(HTTPStatus.NOT_FOUND, f"{url.path}: no such page (try / or /api/search)")

        def _post(self) -> None:
            url = urlsplit(self.path)
            params = parse_qs(url.query, keep_blank_values=True)
            if url.path != "/api/search":
                raise BadRequest(HTTPStatus.NOT_FOUND, f"{url.path}: POST goes to /api/search")
            modality = params.get("modality", [""])[0]
            if modality not in ("image", "audio"):
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"unknown upload modality {modality!r}: use "
                                                         "?modality=image or ?modality=audio (text: GET ?text=)")
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "the upload needs a Content-Length") from None
            if length > MAX_UPLOAD:
                raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                 f"upload of {length} bytes is over the {MAX_UPLOAD} byte limit")
            body = self.rfile.read(length)
            name = os.path.basename(params.get("name", ["upload"])[0]) or "upload"
            self._json(HTTPStatus.OK, searcher.search(modality, body, _k(params), _galleries(params), name))

    return Handler


def make_server(searcher: ChampionSearcher, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    searcher.current()  # fail at start (stale index, no champion) rather than on the first query
    server = ThreadingHTTPServer((host, port), make_handler(searcher))
    server.daemon_threads = True
    return server


def serve_in_thread(searcher: ChampionSearcher, host: str = "127.0.0.1", port: int = 0):
    """(server, url) with the server running in a daemon thread (tests, benchmarks); stop: server.shutdown()."""
    server = make_server(searcher, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"
