"""HTTP routes, SQS consumers and scheduled jobs: one blueprint module per area."""
