"""Content-addressed model store on disk, indexed by an embedded SQLite database.

Layout under the store root::

    index.sqlite          one row per model: id, name, metadata JSON
    models/<sha256>/      model.onnx and side files (data-0.bin, ...) under names we chose
    incoming/<uuid>/      uploads in progress

Visibility is the index row: files are moved into ``models/`` first, then the row is
committed, so a crash at any point leaves either a complete model or nothing visible.
Leftovers (incoming folders, model folders without a row) are swept at start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import onnx

from convscope.errors import InvalidArgument, NotFound, ResourceExhausted
from convscope.model.types import ModelRecord
from convscope.model.validate import MODEL_FILE

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 2 << 30
MIN_ID_PREFIX = 8  # shorter prefixes of a sha256 id collide too easily to name a model by
# Side-file names are chosen by us; the uploaded names only select which reference they satisfy.
SIDE_FILE_PATTERN = "data-{index}.bin"


@dataclass
class Upload:
    """Files of one upload as they arrive; hashed and size-capped while written."""

    folder: Path
    max_bytes: int
    received: int = 0
    _files: dict[str, BinaryIO] = field(default_factory=dict)
    _hashes: dict[str, hashlib._Hash] = field(default_factory=dict)
    side_names: dict[str, str] = field(default_factory=dict)  # uploaded name -> stored name

    def write(self, file: str, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.max_bytes:
            raise ResourceExhausted(
                f"upload exceeds the server's limit of {self.max_bytes / 2**20:.0f} MiB "
                "(start the server with a larger --max-upload-mb to accept it)"
            )
        if file not in self._files:
            self._files[file] = open(self.folder / self._stored_name(file), "wb")
            self._hashes[file] = hashlib.sha256()
        self._files[file].write(data)
        self._hashes[file].update(data)

    def _stored_name(self, file: str) -> str:
        if file == "":
            return MODEL_FILE
        if not file or "/" in file or "\\" in file or file in (".", "..") or "\x00" in file:
            raise InvalidArgument(f"side file name {file!r} must be a plain file name such as 'model.onnx.data'")
        stored = SIDE_FILE_PATTERN.format(index=len(self.side_names))
        self.side_names[file] = stored
        return stored

    def close_files(self) -> None:
        for handle in self._files.values():
            handle.close()

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_FILE

    def content_id(self) -> str:
        """sha256 of the model file; with side files, of the model's and each side file's hashes."""
        if "" not in self._hashes:
            raise InvalidArgument("the upload contained no model file chunks")
        if not self.side_names:
            return self._hashes[""].hexdigest()
        combined = hashlib.sha256(self._hashes[""].digest())
        for name in sorted(self.side_names):
            combined.update(name.encode() + b"\0" + self._hashes[name].digest())
        return combined.hexdigest()


class ModelStore:
    """The uploaded models under ``root`` (layout above): each in a folder named by its content
    hash, visible once its row is in the index, looked up by id or unique id prefix. Shared by
    the server's threads: one re-entrant lock guards the index and the cache of records."""

    def __init__(self, root: Path, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> None:
        self.root = Path(root)
        self.max_upload_bytes = max_upload_bytes
        self._models = self.root / "models"
        self._incoming = self.root / "incoming"
        self._models.mkdir(parents=True, exist_ok=True)
        self._incoming.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # re-entrant: _find takes it, also inside the insert's critical section
        self._records: dict[str, ModelRecord] = {}
        self._db = sqlite3.connect(self.root / "index.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS models (id TEXT PRIMARY KEY, name TEXT NOT NULL, record TEXT NOT NULL)")
        self._sweep()

    def _sweep(self) -> None:
        """Remove what an interrupted upload or delete left behind."""
        for leftover in self._incoming.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
        known = {row[0] for row in self._db.execute("SELECT id FROM models")}
        for folder in self._models.iterdir():
            if folder.name not in known:
                log.warning("removing model folder %s that has no index entry", folder.name[:12])
                shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        self._db.close()

    # -- uploads

    def begin_upload(self) -> Upload:
        folder = self._incoming / uuid.uuid4().hex
        folder.mkdir()
        return Upload(folder, self.max_upload_bytes)

    def abort(self, upload: Upload) -> None:
        upload.close_files()
        shutil.rmtree(upload.folder, ignore_errors=True)

    def commit(self, upload: Upload, make_record: Callable[[str, Upload], ModelRecord]) -> ModelRecord:
        """Finish an upload: ``make_record(id, upload)`` validates the files and describes them.

        Any exception leaves nothing behind. The same bytes uploaded again return the stored
        record without validating twice.
        """
        try:
            upload.close_files()
            model_id = upload.content_id()
            existing = self._find(model_id)
            if existing is not None:
                return existing
            record = make_record(model_id, upload)
            with self._lock:
                existing = self._find(model_id)
                if existing is not None:
                    return existing
                final = self._models / model_id
                if final.exists():
                    shutil.rmtree(final)
                upload.folder.rename(final)
                self._db.execute(
                    "INSERT INTO models (id, name, record) VALUES (?, ?, ?)",
                    (model_id, record.name, json.dumps(record.to_json())),
                )
                self._records[model_id] = record
            log.info("stored model %s (%s, %d layers)", model_id[:12], record.name, len(record.layers))
            return record
        finally:
            self.abort(upload)

    # -- queries

    def _find(self, model_id: str) -> ModelRecord | None:
        # Every request looks its model up: records are immutable values, so keep them decoded
        # (this process is the store's only writer; update and delete refresh the cache).  The
        # read stays under the lock: a delete or update between it and the caching would
        # otherwise leave the old record cached for good.
        with self._lock:
            cached = self._records.get(model_id)
            if cached is not None:
                return cached
            row = self._db.execute("SELECT record FROM models WHERE id = ?", (model_id,)).fetchone()
            if row is None:
                return None
            record = self._records[model_id] = ModelRecord.from_json(json.loads(row[0]))
            return record

    def get(self, model_id: str) -> ModelRecord:
        """The model with id ``model_id``, or with a unique prefix of it (8 characters or more,
        e.g. the 12 the log shows)."""
        record = self._find(model_id) if model_id else None
        if record is None and len(model_id) >= MIN_ID_PREFIX:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id FROM models WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT 5", (len(model_id), model_id)
                ).fetchall()
            if len(rows) > 1:
                candidates = ", ".join(row[0][:16] for row in rows)
                raise InvalidArgument(f"model id prefix {model_id!r} is ambiguous: it starts {candidates}; give more characters")
            record = self._find(rows[0][0]) if rows else None
        if record is None:
            raise NotFound(f"no model with id {model_id!r}; `convscope models` (list_models) shows the stored ones")
        return record

    def list(self) -> list[ModelRecord]:
        rows = self._db.execute("SELECT record FROM models ORDER BY name, id").fetchall()
        return [ModelRecord.from_json(json.loads(row[0])) for row in rows]

    def update(self, record: ModelRecord, **changes: object) -> ModelRecord:
        """Replace metadata fields (name, preprocessing, labels) of a stored model."""
        updated = dataclasses.replace(record, **changes)  # type: ignore[arg-type]
        with self._lock:
            self._db.execute(
                "UPDATE models SET name = ?, record = ? WHERE id = ?",
                (updated.name, json.dumps(updated.to_json()), record.id),
            )
            self._records[record.id] = updated
        return updated

    def delete(self, model_id: str) -> None:
        model_id = self.get(model_id).id
        with self._lock:
            self._db.execute("DELETE FROM models WHERE id = ?", (model_id,))
            self._records.pop(model_id, None)
        # After the row is gone the folder is garbage; a crash here is swept at the next start.
        shutil.rmtree(self._models / model_id, ignore_errors=True)

    def folder(self, model_id: str) -> Path:
        return self._models / model_id

    def load(self, model_id: str) -> onnx.ModelProto:
        """The stored model with its external data (side files we named ourselves) loaded."""
        return onnx.load(str(self.folder(model_id) / MODEL_FILE), load_external_data=True)
