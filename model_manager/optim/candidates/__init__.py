"""Build candidates as plugins: one module per backend family, loaded by ``registry``.

``base`` holds the types a plugin needs (it imports no plugin); ``registry`` is the one module
that imports the plugins. A plugin never imports the registry or another plugin.
"""
