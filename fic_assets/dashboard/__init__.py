"""The analysts' dashboard: a Streamlit app over the analytics snapshot (`fic dashboard`)."""
