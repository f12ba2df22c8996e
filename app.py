"""The Chalice application: created here, wired with middleware and blueprints. Nothing else."""

from chalice import Chalice

from chalicelib.api import (
    admin,
    auth,
    counselling,
    door,
    entry,
    exports,
    hall,
    health,
    leave,
    mailbox,
    middleware,
    notices,
    notifications,
    people,
    repair,
    resources,
    suggestions,
    system,
    wecom_callback,
)

app = Chalice(app_name="campus-platform")
app.register_middleware(middleware.log_context, "all")
AREAS = (system, auth, people, admin, notifications, wecom_callback, hall, counselling, repair, mailbox, suggestions,
         notices, health, entry, door, leave, resources)
# Spreadsheet exports are bytes: API Gateway passes them through when the client accepts the type.
app.api.binary_types.append(exports.XLSX)
for module in AREAS:
    app.register_blueprint(module.area.blueprint)
