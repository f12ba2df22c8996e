"""The Chalice application: created here, wired with middleware and blueprints. Nothing else."""

from chalice import Chalice

from chalicelib.api import admin, auth, hall, middleware, notifications, people, system, wecom_callback

app = Chalice(app_name="campus-platform")
app.register_middleware(middleware.log_context, "all")
for area in (system.area, auth.area, people.area, admin.area, notifications.area, wecom_callback.area, hall.area):
    app.register_blueprint(area.blueprint)
