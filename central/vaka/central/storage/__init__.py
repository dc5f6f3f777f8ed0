"""The database: the engine, every table on one ``MetaData`` and the one ``create_schema`` that
creates them.
"""
