"""The methods, one module or package each (``raypkg/methods/NAME.py`` or ``NAME/``): what each
adds to the platform (its algorithm and settings, or its recipe and commands). Registered by
a row of ``raypkg.method_registry.METHODS`` (its name, and import paths; loaded when used); nothing here
is imported by the platform (engine, data, models, selection, tracking, recipes), and no
method imports another: what two methods share lives in the platform."""
