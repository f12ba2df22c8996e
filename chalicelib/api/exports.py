"""Spreadsheet downloads shared by the areas that export (health reports, who is away).

``xlsx`` is bytes: API Gateway returns bytes only to a client whose ``Accept`` names the type (it
is in the app's binary types), so asking for it without that header is refused with the reason.
``csv`` is UTF-8 with a byte-order mark, so Excel opens Chinese text right. In both, text that
starts like a formula is quoted (CSV injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from chalice import Response

from chalicelib.errors import BadRequest

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def check_accept(fmt: str, accept: str | None) -> None:
    """Raises BadRequest for an xlsx request whose ``Accept`` would make API Gateway mangle the bytes."""
    accept = (accept or "").lower()
    if fmt == "xlsx" and XLSX not in accept and "*/*" not in accept:
        raise BadRequest(f"Send 'Accept: {XLSX}' to download the spreadsheet, or ask for format=csv.")


def spreadsheet(fmt: str, name: str, sheet: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Response:
    """The rows as a download named ``<name>.<fmt>``."""
    filename = f"{name}.{fmt}"
    disposition = f'attachment; filename="{filename}"'
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(headers)
        writer.writerows([[cell(v) for v in row] for row in rows])
        return Response(body="\ufeff" + buffer.getvalue(), status_code=200,
                        headers={"Content-Type": "text/csv; charset=utf-8", "Content-Disposition": disposition})
    return Response(body=_xlsx(sheet, headers, rows), status_code=200,
                    headers={"Content-Type": XLSX, "Content-Disposition": disposition})


def cell(value: Any) -> Any:
    """A cell safe to open in Excel: text that starts like a formula is quoted (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _xlsx(sheet_name: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    from openpyxl import Workbook  # imported on use: most invocations never export

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=sheet_name[:31])
    sheet.append(list(headers))
    for row in rows:
        sheet.append([cell(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
