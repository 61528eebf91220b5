"""Plan → engine commands. `sglang.render_commands` is the one the serve/k8s/slurm renderers build on;
`data` holds the shell/env/json/yaml text forms."""
