"""The Chalice application: created here, wired with middleware and blueprints. Nothing else."""

from chalice import Chalice

from chalicelib.api import middleware, system

app = Chalice(app_name="campus-platform")
app.register_middleware(middleware.log_context, "all")
app.register_blueprint(system.area.blueprint)
