"""Human labels: the local Label Studio server, its client, projects, labelling tasks and label sync.

`server.py` installs and starts Label Studio; `client.py` talks to it; `projects.py` keeps one project per
round; `tasks.py` chooses the images to label; `labels.py` pulls annotations into DuckDB.
"""
