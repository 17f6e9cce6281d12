"""Dataset formats: readers (``open`` → episodes) and writers (store → files), found by name through
the "dataset_format" registry (``get_format``) or by sniffing a path (``detect_format``)."""

from librobot.data.formats.base import DatasetFormat, EpisodeSource, detect_format, format_names, get_format

__all__ = ["DatasetFormat", "EpisodeSource", "detect_format", "format_names", "get_format"]
