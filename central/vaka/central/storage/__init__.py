"""The database: the engine, every table on one ``MetaData``, the migrations that make them in
the database, and the locks that serialise writers who must see each other's rows.
"""
