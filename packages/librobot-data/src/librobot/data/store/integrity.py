"""Which chunk files a store should have, their checksum log, and ``verify_store``.

The writer appends one line to ``chunk_sums.jsonl`` per chunk file it writes (size and crc32 of
the file's bytes); the last line of a chunk wins. The log is appended rather than rewritten so a
store of a million chunks does not rewrite megabytes per committed episode; the commit record
stays the commit point, and a torn last line (a crash mid-append) is ignored.
``verify_store`` checks every chunk that holds committed frames against the log, or, for a
version-1 store (no log), that it exists and decodes.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from librobot.data.errors import DataFormatError, StoreChunkError
from librobot.data.store.chunks import ChunkReader
from librobot.data.store.layout import (
    CHUNK_SUMS_FILE,
    CHUNKS_WRITTEN_VERSION,
    DATA_GROUP,
    EPISODE_ENDS,
    TASK_INDEX,
    read_record,
)


def store_arrays(record: dict[str, Any]) -> dict[str, int]:
    """Every array of the store → the frames (rows) of it that the commit record vouches for."""
    frames, episodes = int(record["num_frames"]), int(record["num_episodes"])
    arrays = {EPISODE_ENDS: episodes, TASK_INDEX: frames}
    arrays.update({f"{DATA_GROUP}/{key}": frames for key in record["features"]})
    return arrays


def legacy_zeros_certain(record: dict[str, Any], array: str) -> bool:
    """In a version-1 store (which skipped all-zero chunks), is an absent chunk of ``array`` surely
    zeros? Only for the task index of a single-task store, where 0 is the only valid value."""
    return record["version"] < CHUNKS_WRITTEN_VERSION and array == TASK_INDEX and len(record["tasks"]) <= 1


# ---------------------------------------------------------------------- the checksum log
def file_sum(path: str | Path) -> tuple[int, int]:
    """(size, crc32) of a file's bytes."""
    data = Path(path).read_bytes()
    return len(data), zlib.crc32(data)


def sum_lines(entries: Iterable[tuple[str, int, str | Path]]) -> str:
    """Log lines for ``(array, chunk index, chunk file)`` entries, hashing each file."""
    lines = []
    for array, index, path in entries:
        try:
            size, crc = file_sum(path)
        except FileNotFoundError:
            raise StoreChunkError(
                f"{path}: chunk {index} of '{array}' is missing where the writer expects it, so its checksum "
                "cannot be recorded; re-convert the dataset or restore the file",
                array=array,
                key=str(index),
                file=str(path),
                problem="missing",
            ) from None
        lines.append(json.dumps({"array": array, "chunk": index, "bytes": size, "crc32": crc}, separators=(",", ":")))
    return "".join(line + "\n" for line in lines)


def append_sums(store: str | Path, text: str) -> None:
    if text:
        with open(Path(store) / CHUNK_SUMS_FILE, "a", encoding="utf-8") as handle:
            handle.write(text)


def read_sums(store: str | Path) -> tuple[dict[tuple[str, int], tuple[int, int]] | None, list[int]]:
    """The log as (array, chunk) → (size, crc32), or None when there is none; and the numbers of
    lines that are not valid entries (a torn last line is not counted)."""
    path = Path(store) / CHUNK_SUMS_FILE
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None, []
    sums: dict[tuple[str, int], tuple[int, int]] = {}
    bad: list[int] = []
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            entry = json.loads(line)
            sums[(str(entry["array"]), int(entry["chunk"]))] = (int(entry["bytes"]), int(entry["crc32"]))
        except (ValueError, KeyError, TypeError):
            if number < len(lines):  # the final piece has no newline: a torn append, not damage
                bad.append(number)
    return sums, bad


# ---------------------------------------------------------------------- verification
@dataclass
class ChunkProblem:
    array: str
    key: str
    file: str
    problem: str  # "missing", "corrupt" or "unrecorded"
    detail: str = ""

    def line(self) -> str:
        return f"{self.problem.upper()} {self.array} {self.key}: {self.detail or self.file}"


@dataclass
class VerifyReport:
    path: Path
    version: int
    checksums: bool  # chunks were checked against recorded checksums (else existence + decoding)
    arrays: int = 0
    chunks: int = 0
    problems: list[ChunkProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "version": self.version,
            "checksums": self.checksums,
            "arrays": self.arrays,
            "chunks": self.chunks,
            "ok": self.ok,
            "problems": [vars(p) for p in self.problems],
        }


def verify_store(path: str | Path) -> VerifyReport:
    """Check every chunk holding committed frames of every array of the store at ``path``."""
    path = Path(path)
    record = read_record(path)
    sums, bad_lines = read_sums(path) if record["version"] >= CHUNKS_WRITTEN_VERSION else (None, [])
    legacy = record["version"] < CHUNKS_WRITTEN_VERSION
    report = VerifyReport(path, record["version"], checksums=sums is not None)
    log_file = str(path / CHUNK_SUMS_FILE)
    if record["version"] >= CHUNKS_WRITTEN_VERSION and sums is None:
        report.problems.append(ChunkProblem(CHUNK_SUMS_FILE, "-", log_file, "missing", f"{log_file} is missing"))
    for number in bad_lines:
        report.problems.append(
            ChunkProblem(CHUNK_SUMS_FILE, f"line {number}", log_file, "corrupt", f"{log_file} line {number} is garbled")
        )
    for array, frames in store_arrays(record).items():
        report.arrays += 1
        try:
            reader = ChunkReader(path / array, name=array, store=path)
        except DataFormatError as exc:
            report.problems.append(
                ChunkProblem(array, "zarr.json", str(path / array / "zarr.json"), "missing", str(exc))
            )
            continue
        if reader.shape[0] < frames:
            report.problems.append(
                ChunkProblem(
                    array,
                    "zarr.json",
                    str(path / array / "zarr.json"),
                    "corrupt",
                    f"the array has {reader.shape[0]} rows but the store records {frames}",
                )
            )
            continue
        for index in range(reader.num_chunks(frames)):
            report.chunks += 1
            problem = _check_chunk(reader, index, sums, legacy, legacy_zeros_certain(record, array))
            if problem is not None:
                report.problems.append(problem)
    return report


def _check_chunk(
    reader: ChunkReader,
    index: int,
    sums: dict[tuple[str, int], tuple[int, int]] | None,
    legacy: bool,
    zeros_ok: bool,
) -> ChunkProblem | None:
    file, key = reader.chunk_path(index), reader.chunk_key(index)
    try:
        raw = Path(file).read_bytes()
    except FileNotFoundError:
        if zeros_ok:
            return None
        detail = f"{file} does not exist"
        if legacy:
            detail += " (a version-1 store did not write chunks holding only zeros; this one may have)"
        return ChunkProblem(reader.name, key, file, "missing", detail)
    except OSError as exc:
        return ChunkProblem(reader.name, key, file, "corrupt", f"{file} cannot be read: {exc}")
    recorded = sums.get((reader.name, index)) if sums is not None else None
    if recorded is not None:
        actual = (len(raw), zlib.crc32(raw))
        if actual == recorded:
            return None  # the bytes the writer wrote: no need to decode them
        how = "truncated" if actual[0] < recorded[0] else "changed"
        return ChunkProblem(
            reader.name,
            key,
            file,
            "corrupt",
            f"{file} is {how}: {actual[0]} bytes with crc32 {actual[1]:08x}, "
            f"written as {recorded[0]} bytes with crc32 {recorded[1]:08x}",
        )
    if reader.fast:
        try:
            reader.decode(raw, index)
        except StoreChunkError as exc:
            return ChunkProblem(reader.name, key, file, "corrupt", f"{file} cannot be decoded: {exc.__cause__}")
    if sums is not None:  # decodes, but the writer never logged it
        return ChunkProblem(reader.name, key, file, "unrecorded", f"{file} has no checksum in {CHUNK_SUMS_FILE}")
    return None
