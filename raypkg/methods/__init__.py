"""The methods, one module or package each (``raypkg/methods/NAME.py`` or ``NAME/``): what each
adds to the platform (its settings, config, algorithm or recipe, commands). Registered by a
row of ``raypkg.method_registry.METHODS`` (import paths, loaded when used); nothing here
is imported by the platform (engine, data, models, selection, tracking, recipes), and no
method imports another: what two methods share lives in the platform."""
