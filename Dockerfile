# regsync itself: slim, non-root, no build tools in the final image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY regsync ./regsync
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin regsync
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
USER 10001
WORKDIR /home/regsync
ENTRYPOINT ["regsync", "--log-format", "json", "--no-progress"]
CMD ["--help"]
