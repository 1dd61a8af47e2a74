"""Human labels: the local Label Studio server, its client, projects, labelling tasks and label sync.

`server.py` installs and starts Label Studio; `client.py` talks to it; `projects.py` keeps one project per
round; `rounds.py` is the labelling round (what `label_tasks` runs); `tasks.py` chooses the images to label and
builds their tasks; `labels.py` pulls annotations into DuckDB.
"""
