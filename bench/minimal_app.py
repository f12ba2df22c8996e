"""The cold-start baseline of bench/cold_start.py: the smallest Chalice app that reads DynamoDB
through PynamoDB (one route, one model, one GetItem). Not part of the project's app."""

from chalice import Chalice
from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

app = Chalice(app_name="bench-minimal")


class Item(Model):
    class Meta:
        table_name = "bench-minimal"
        region = "us-east-1"

    key = UnicodeAttribute(hash_key=True)
    value = UnicodeAttribute()


@app.route("/items/{key}")
def get_item(key: str) -> dict:
    return {"key": key, "value": Item.get(key).value}
