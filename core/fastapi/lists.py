"""List endpoints: a resource declares its sortable and filterable fields once, in a `ListSpec`;
the spec gives the route its query parameters (validated, and listed in OpenAPI) and turns them
into SQL: keyset pagination with `cursor`, offset pagination with a count for `page`."""

from __future__ import annotations

import base64
import operator
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
)
from sqlalchemy import BigInteger, ColumnElement, Select, TypeDecorator, and_, func, or_, select

from core.db import session
from core.exceptions import BadRequestException, invalid_field
from core.helpers.validators import PlainText

M = TypeVar("M", bound=BaseModel)
# Filter operators: `field=v`, `field__in=a,b`, `field__gte=v`, `field__lte=v`, `field__contains=v`.
CLAUSES: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": operator.eq,
    "in": lambda column, values: column.in_(values),
    "gte": operator.ge,
    "lte": operator.le,
    "contains": lambda column, value: column.icontains(value, autoescape=True),
}
MAX_LIMIT = 100
MAX_IN_VALUES = 100


class Page(BaseModel, Generic[M]):
    items: list[M]
    next_cursor: str | None = None
    page: int | None = None
    total: int | None = None


class ListQuery(BaseModel):
    """A validated list request. A plain value, so a cached list function keys on it."""

    model_config = ConfigDict(frozen=True)

    limit: int
    page: int | None = None
    sort: tuple[str, ...]
    # The sort values of the row the previous page ended with (keyset pagination).
    after: tuple[Any, ...] | None = None
    filters: tuple[tuple[str, str, Any], ...] = ()


class InvalidCursorException(BadRequestException):
    error_code = "INVALID_CURSOR"
    detail = "The cursor parameter is not one this API returned for this sort."


@dataclass(frozen=True)
class ListField:
    """A column a list shows; `sort` makes it sortable, `filters` names its operators. Sortable
    columns must be NOT NULL: keyset pagination compares their values."""

    column: ColumnElement[Any]
    sort: bool = False
    filters: Sequence[str] = ()


def _in_utc_range(value: datetime) -> datetime:
    # A time without a zone is UTC, as UTCDateTime stores times; never the host's local time.
    try:
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except OverflowError as error:
        raise ValueError("is out of range once in UTC") from error


def _openapi_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The model's fields as OpenAPI query parameters, all optional."""
    properties = model.model_json_schema()["properties"]
    return [
        {"name": name, "in": "query", "required": False, "schema": schema}
        | ({"description": schema.pop("description")} if "description" in schema else {})
        for name, schema in properties.items()
    ]


class ListSpec:
    def __init__(self, fields: Mapping[str, ListField], *, key: str, default_sort: str) -> None:
        unknown = {op for f in fields.values() for op in f.filters} - set(CLAUSES)
        if unknown or key not in fields:
            raise ValueError(f"bad list spec: operators {unknown}, key {key!r}")
        self.fields = dict(fields)
        searched = [n for n, f in fields.items() if "contains" in f.filters]
        if any(self._type(name) is not PlainText for name in searched):
            raise ValueError("bad list spec: `contains` needs a text column")
        # Built once: a TypeAdapter costs far more to make than to use.
        self.adapters: dict[str, TypeAdapter[Any]] = {n: TypeAdapter(self._type(n)) for n in fields}
        self.key = key
        self.default_sort = self._parse_sort(default_sort)
        # Parameter name -> (field, operator).
        self.filters = {
            (name if op == "eq" else f"{name}__{op}"): (name, op)
            for name, spec in fields.items()
            for op in spec.filters
        }
        parameters = self._parameters_model()
        # The route shows these in OpenAPI (openapi_extra): the dependency reads the query string.
        self.openapi: dict[str, Any] = {"parameters": _openapi_parameters(parameters)}
        self.dependency = self._dependency(parameters)

    def _type(self, name: str) -> Any:
        """The column's Python type, limited to what the column can hold: a value beyond it is a
        client's mistake (422, or a bad cursor), not a database error."""
        sql_type = self.fields[name].column.type
        if isinstance(sql_type, TypeDecorator):
            sql_type = sql_type.impl_instance  # a decorated type's own python_type is `object`
        python_type = sql_type.python_type
        if python_type is int:
            bits = 64 if isinstance(sql_type, BigInteger) else 32
            return Annotated[int, Field(ge=-(2 ** (bits - 1)), le=2 ** (bits - 1) - 1)]
        if python_type is str:
            return PlainText
        if python_type is datetime:
            return Annotated[datetime, AfterValidator(_in_utc_range)]
        return python_type

    def _parse_sort(self, text: str) -> tuple[str, ...]:
        sort: list[str] = []
        for item in (part.strip() for part in text.split(",")):
            name = item.removeprefix("-")
            if name not in self.fields or not self.fields[name].sort:
                sortable = ", ".join(n for n, f in self.fields.items() if f.sort)
                raise invalid_field(
                    ("query", "sort"), f"cannot sort by {item!r}; sortable: {sortable}"
                )
            if name in (s.removeprefix("-") for s in sort):
                raise invalid_field(("query", "sort"), f"{name!r} appears twice")
            sort.append(item)
        if self.key not in (s.removeprefix("-") for s in sort):
            sort.append(self.key)  # the tie-breaker makes the order total
        return tuple(sort)

    def _filter_value(self, parameter: str, name: str, op: str, raw: Any) -> Any:
        if op != "in":
            return raw  # validated by the parameters model
        values = [part.strip() for part in raw.split(",")]
        if len(values) > MAX_IN_VALUES:
            raise invalid_field(("query", parameter), f"at most {MAX_IN_VALUES} values")
        try:
            return tuple(self.adapters[name].validate_python(value) for value in values)
        except ValidationError as error:
            raise invalid_field(("query", parameter), error.errors()[0]["msg"]) from error

    def encode_cursor(self, sort: tuple[str, ...], values: Sequence[Any]) -> str:
        raw = orjson.dumps([",".join(sort), list(values)])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode_cursor(self, cursor: str, sort: tuple[str, ...]) -> tuple[Any, ...]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            made_for, values = orjson.loads(raw)
        except (ValueError, TypeError) as error:  # binascii and orjson errors are ValueErrors
            raise InvalidCursorException() from error
        if made_for != ",".join(sort):
            raise InvalidCursorException(
                f"The cursor parameter was made for sort={made_for!r}, not for this one."
            )
        if not isinstance(values, list) or len(values) != len(sort):
            raise InvalidCursorException()
        try:
            return tuple(
                self.adapters[item.removeprefix("-")].validate_python(value)
                for item, value in zip(sort, values, strict=True)
            )
        except ValidationError as error:
            raise InvalidCursorException() from error

    def _parameters_model(self) -> type[BaseModel]:
        sortable = ", ".join(n for n, f in self.fields.items() if f.sort)
        fields: dict[str, Any] = {
            "limit": (int, Field(20, ge=1, le=MAX_LIMIT)),
            # Room for the longest cursor this hands out: a few text columns of 4-byte characters.
            "cursor": (str | None, Field(None, max_length=8192)),
            "page": (int | None, Field(None, ge=1, le=2**31 - 1)),
            "sort": (
                str | None,
                Field(
                    None,
                    max_length=256,
                    description=f"Comma list, `-` for descending, of: {sortable}.",
                ),
            ),
        }
        for parameter, (name, op) in self.filters.items():
            kind: Any = PlainText if op in ("in", "contains") else self._type(name)
            limit = Field(None, max_length=4096) if kind is PlainText else None
            fields[parameter] = (kind | None, limit)
        # One model for every parameter: validated in one call, and an unknown one is refused.
        return create_model("ListParameters", __config__=ConfigDict(extra="forbid"), **fields)

    def _dependency(
        self, parameters_model: type[BaseModel]
    ) -> Callable[..., Coroutine[Any, Any, ListQuery]]:
        # The query string is validated here, not by FastAPI: FastAPI's work per declared
        # parameter cost a cached page more than the rest of its route.
        async def list_query(request: Request) -> ListQuery:
            sent = request.query_params
            if len(items := sent.multi_items()) != len(sent):
                # dict() would keep the last one, and the client be answered for half its ask.
                repeated = next(key for key in sent if len(sent.getlist(key)) > 1)
                raise invalid_field(("query", repeated), "send this parameter once")
            try:
                parameters = parameters_model.model_validate(dict(items))
            except ValidationError as error:
                raise RequestValidationError(
                    [{**e, "loc": ("query", *e["loc"])} for e in error.errors()]
                ) from error
            values = parameters.model_dump()
            if values["cursor"] is not None and values["page"] is not None:
                raise invalid_field(("query", "page"), "send either cursor or page, not both")
            sort = self._parse_sort(values["sort"]) if values["sort"] else self.default_sort
            after = self.decode_cursor(values["cursor"], sort) if values["cursor"] else None
            filters = tuple(
                (name, op, self._filter_value(parameter, name, op, values[parameter]))
                for parameter, (name, op) in self.filters.items()
                if values[parameter] is not None
            )
            return ListQuery(
                limit=values["limit"], page=values["page"], sort=sort, after=after, filters=filters
            )

        return list_query

    def _where(self, query: ListQuery) -> list[ColumnElement[bool]]:
        return [CLAUSES[op](self.fields[name].column, value) for name, op, value in query.filters]

    def _after(self, query: ListQuery) -> ColumnElement[bool]:
        """Rows after the cursor's row in the sort order: a >= x and ((a > x) or (a = x and b > y)
        ...); the first term alone is an index range, so a deep page does not scan the ones
        before it."""
        assert query.after is not None
        options = []
        for index, (item, value) in enumerate(zip(query.sort, query.after, strict=True)):
            column = self.fields[item.removeprefix("-")].column
            beyond = column < value if item.startswith("-") else column > value
            earlier = [
                self.fields[s.removeprefix("-")].column == v
                for s, v in zip(query.sort[:index], query.after[:index], strict=True)
            ]
            options.append(and_(*earlier, beyond))
        first, start = query.sort[0], query.after[0]
        lead = self.fields[first.removeprefix("-")].column
        return and_(lead <= start if first.startswith("-") else lead >= start, or_(*options))

    async def fetch(self, base: Select[Any], query: ListQuery, item: type[M]) -> Page[M]:
        """One page of `base` (a select of the spec's columns), filtered and sorted as asked."""
        statement = base.where(*self._where(query))
        total = None
        if query.page is not None:
            count = select(func.count()).select_from(statement.subquery())
            total = (await session.execute(count)).scalar_one()
            statement = statement.offset((query.page - 1) * query.limit)
        elif query.after is not None:
            statement = statement.where(self._after(query))
        order = [
            self.fields[s.removeprefix("-")].column.desc()
            if s.startswith("-")
            else self.fields[s].column.asc()
            for s in query.sort
        ]
        rows = (await session.execute(statement.order_by(*order).limit(query.limit + 1))).all()
        shown = rows[: query.limit]
        next_cursor = None
        if len(rows) > query.limit and query.page is None:
            last = shown[-1]._mapping
            values = [last[self.fields[s.removeprefix("-")].column] for s in query.sort]
            next_cursor = self.encode_cursor(query.sort, values)
        return Page[item](  # type: ignore[valid-type]
            items=[item.model_validate(row) for row in shown],
            next_cursor=next_cursor,
            page=query.page,
            total=total,
        )
