"""The leaderboard: a read-only Streamlit page and CSV/Markdown/LaTeX exports over a results home."""
