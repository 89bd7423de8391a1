"""Figures as tables (a title, typed columns, rows) and their exports: CSV in UTF-8 with a BOM (so Excel reads
Chinese correctly) and XLSX (one sheet per table, a header row, number formats)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from urllib.parse import quote

DAYS, COUNT, SHARE, SCORE, TEXT = "days", "count", "share", "score", "text"
XLSX_FORMATS = {DAYS: "0.00", COUNT: "0", SHARE: "0.0%", SCORE: "0.00"}
CSV_MEDIA = "text/csv; charset=utf-8"
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    kind: str = TEXT


@dataclass
class Table:
    name: str  # the sheet's name (at most 31 characters)
    columns: list[Column]
    rows: list[dict] = field(default_factory=list)


def _csv_value(value, kind: str) -> object:
    if value is None:
        return ""
    if kind == SHARE:
        return f"{value * 100:.1f}%"
    return value


def to_csv(tables: list[Table]) -> bytes:
    """One table as plain CSV; several as titled blocks separated by an empty line."""
    out = io.StringIO()
    writer = csv.writer(out)
    for index, table in enumerate(tables):
        if len(tables) > 1:
            if index:
                writer.writerow([])
            writer.writerow([table.name])
        writer.writerow([c.title for c in table.columns])
        for row in table.rows:
            writer.writerow([_csv_value(row.get(c.key), c.kind) for c in table.columns])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


def to_xlsx(tables: list[Table]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.active)
    for table in tables:
        sheet = book.create_sheet(table.name[:31])
        sheet.append([c.title for c in table.columns])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in table.rows:
            sheet.append([row.get(c.key) for c in table.columns])
        for col_index, column in enumerate(table.columns, start=1):
            number_format = XLSX_FORMATS.get(column.kind)
            letter = sheet.cell(row=1, column=col_index).column_letter
            sheet.column_dimensions[letter].width = max(10, 2 * len(column.title) + 2)
            if number_format:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=col_index, max_col=col_index):
                    cell.number_format = number_format
        sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def content_disposition(filename: str) -> str:
    """An attachment header with an ASCII fallback and the Chinese name per RFC 5987."""
    fallback = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def export(tables: list[Table], fmt: str, basename: str) -> tuple[bytes, str, str]:
    """(body, content type, Content-Disposition) of the tables as `fmt` (csv or xlsx)."""
    if fmt == "csv":
        return to_csv(tables), CSV_MEDIA, content_disposition(f"{basename}.csv")
    return to_xlsx(tables), XLSX_MEDIA, content_disposition(f"{basename}.xlsx")
