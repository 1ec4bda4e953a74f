# autotune serve on top of vLLM's own image: `docker run --gpus all -v $PWD/out:/config -p 8000:8000 IMAGE`
# serves /config/best.yaml (written by `autotune tune`) with vLLM 0.24.0.
FROM vllm/vllm-openai:v0.24.0

WORKDIR /opt/autotune
COPY pyproject.toml README.md ./
COPY autotune ./autotune
COPY serving ./serving

# Install autotune without touching vLLM's pinned stack: its non-vLLM dependencies are resolved
# under constraints = everything already installed in the image (a conflict fails the build loudly).
# The `cluster` extra (the PostgreSQL driver) comes too: workers share a study in PostgreSQL (deploy/, docker-compose.yml).
RUN python3 -m pip list --format=freeze > /tmp/image-constraints.txt \
 && python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['cluster']))" \
        > /tmp/autotune-requirements.txt \
 && python3 -m pip install --no-cache-dir -c /tmp/image-constraints.txt -r /tmp/autotune-requirements.txt \
 && python3 -m pip install --no-cache-dir --no-deps . \
 && rm /tmp/image-constraints.txt /tmp/autotune-requirements.txt \
 && autotune --help > /dev/null

EXPOSE 8000
ENTRYPOINT ["autotune", "serve"]
# Listen on all interfaces inside the container (the config's default host is 127.0.0.1).
CMD ["--config", "/config/best.yaml", "--host", "0.0.0.0", "--port", "8000"]
