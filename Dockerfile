# fakeshift as a sidecar: a fake Blueshift API on port 8080, configured by FAKESHIFT_* variables.
# Build: docker build -t fakeshift .    Run: docker run --rm -p 8080:8080 fakeshift

# Build a virtual environment in a throw-away stage so build tools and caches stay out of the image.
FROM python:3.12-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/fakeshift
WORKDIR /src
# .dockerignore lets in only what the package build reads (pyproject.toml names it all).
COPY . .
# A regular (not editable) install: the image must not depend on the source tree. dumb-init
# (a static binary, from its PyPI wheel) becomes PID 1; see ENTRYPOINT. The bytecode pip
# compiles stays: 5 MB that save about a second of every start.
RUN /opt/fakeshift/bin/pip install --no-cache-dir . dumb-init==1.2.5.post1 \
    && /opt/fakeshift/bin/pip uninstall --yes pip

FROM python:3.12-slim
COPY --from=build /opt/fakeshift /opt/fakeshift
ENV PATH=/opt/fakeshift/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FAKESHIFT_HOST=0.0.0.0 \
    FAKESHIFT_PORT=8080
# The server's one writable place, for FAKESHIFT_STATE_FILE=/state/fakeshift.json (mount a
# volume here to keep state beyond the container).
RUN mkdir /state && chown 10001:10001 /state
# Mount scenario files here and name one with FAKESHIFT_SCENARIO=/scenarios/<file>.yaml.
WORKDIR /scenarios
USER 10001:10001
EXPOSE 8080
# Ready (not just alive): the scenario is loaded. No curl in the image, so Python asks.
# A short interval rather than --start-interval: podman 4.x / buildah 1.28 refuse that flag
# (Docker 25+ only), and a probe every 2 s costs one Python start.
HEALTHCHECK --interval=2s --timeout=2s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('FAKESHIFT_PORT', '8080') + '/_fakeshift/ready', timeout=2)"]
# fakeshift serve handles SIGTERM itself once started, but a PID 1 drops every signal it has no
# handler for: a stop while Python is still importing would wait for SIGKILL. Under dumb-init the
# server is an ordinary child, which SIGTERM ends at any moment.
ENTRYPOINT ["dumb-init", "--", "fakeshift"]
CMD ["serve"]
