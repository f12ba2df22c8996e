"""Business rules in plain Python: no boto3, Chalice or requests imports here."""
