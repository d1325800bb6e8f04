"""Policy search: declarative spaces (space.py) and the Ray Tune driver (tune.py, the only Ray user)."""
