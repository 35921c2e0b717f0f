# NixOS VM test: boots services.hermes-agent against a loopback OpenAI-compatible
# provider and checks that the deployment was applied and the agent answers.
# A second machine creates its users with userborn (current NixOS): the first
# start must work there too, with no activation script.
# Needs Linux with KVM: `nix build .#checks.x86_64-linux.vm`.
{ nixosModule, package }:

{ pkgs, ... }:
let
  # A scripted chat-completions endpoint on 127.0.0.1:8089 that always answers "pong".
  provider = pkgs.writers.writePython3 "loopback-provider" { } ''
    import json
    from http.server import BaseHTTPRequestHandler, HTTPServer


    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({
                "id": "cmpl-1", "object": "chat.completion", "created": 0,
                "model": "loopback",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "pong"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                          "total_tokens": 2},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


    HTTPServer(("127.0.0.1", 8089), Handler).serve_forever()
  '';
in
{
  name = "hermes-agent";

  nodes.userborn = { ... }: {
    imports = [ nixosModule ];
    services.userborn.enable = true;
    services.hermes-agent = {
      enable = true;
      inherit package;
      settings.model.default = "loopback";
      documents."SOUL.md" = "userborn\n";
    };
  };

  nodes.machine = { ... }: {
    imports = [ nixosModule ];
    services.hermes-agent = {
      enable = true;
      inherit package;
      settings = {
        model = {
          provider = "custom";
          base_url = "http://127.0.0.1:8089/v1";
          default = "loopback";
          api_key_env = "LOOPBACK_API_KEY";
        };
        streaming.enabled = false;
      };
      environment.LOG_LEVEL = "info";
      environmentFiles = [ "/etc/hermes-secrets.env" ];
      documents."SOUL.md" = "You are the VM test agent.\n";
      addToSystemPackages = true;
    };
    environment.etc."hermes-secrets.env" = {
      text = "LOOPBACK_API_KEY=test-key\n";
      mode = "0400";
      user = "hermes";
    };
    systemd.services.loopback-provider = {
      wantedBy = [ "multi-user.target" ];
      before = [ "hermes-agent.service" ];
      serviceConfig.ExecStart = provider;
    };
  };

  testScript = ''
    start_all()
    # userborn: the user exists before tmpfiles and the unit need it
    userborn.wait_for_unit("hermes-agent.service")
    userborn.succeed("test \"$(stat -c '%a %U' /var/lib/hermes/.hermes)\" = '700 hermes'")
    userborn.succeed("grep -qx nixos /var/lib/hermes/.hermes/.managed")
    userborn.succeed("test -f /var/lib/hermes/workspace/SOUL.md")

    machine.wait_for_unit("loopback-provider.service")
    machine.wait_for_unit("hermes-agent.service")
    # the deployment was applied, as the service user, with tight modes
    machine.succeed("test \"$(stat -c %a /var/lib/hermes)\" = 750")
    machine.succeed("test \"$(stat -c '%a %U' /var/lib/hermes/.hermes/.env)\" = '600 hermes'")
    machine.succeed("grep -q LOOPBACK_API_KEY /var/lib/hermes/.hermes/.env")
    machine.succeed("grep -qx nixos /var/lib/hermes/.hermes/.managed")
    machine.succeed("grep -q 'base_url: http://127.0.0.1:8089/v1' /var/lib/hermes/.hermes/config.yaml")
    machine.succeed("test -f /var/lib/hermes/workspace/SOUL.md")
    # managed mode: in the unit's environment, and the CLI refuses local changes
    machine.succeed("systemctl show hermes-agent -p Environment | grep -q HERMES_MANAGED=true")
    machine.fail("sudo -u hermes -H hermes config set model.default x")
    # addToSystemPackages: the CLI is on PATH, HERMES_HOME is not set system-wide,
    # and `sudo -u hermes -H` reaches the service's home (docs/nixos.md)
    machine.succeed("command -v hermes")
    machine.fail("bash -lc 'test -n \"$HERMES_HOME\"'")
    machine.succeed("sudo -u hermes -H hermes config show | grep -q loopback")
    # a rotated secret is picked up by a restart (ExecStartPre re-applies)
    machine.succeed("install -m 0400 -o hermes /dev/null /tmp/s && echo LOOPBACK_API_KEY=rotated-key >> /tmp/s")
    machine.succeed("mv -f /tmp/s /etc/hermes-secrets.env")
    machine.succeed("systemctl restart hermes-agent.service")
    machine.wait_for_unit("hermes-agent.service")
    machine.succeed("grep -q rotated-key /var/lib/hermes/.hermes/.env")
    # the agent answers through the loopback provider
    out = machine.succeed("runuser -u hermes -- env HERMES_HOME=/var/lib/hermes/.hermes hermes chat -q ping")
    assert "pong" in out, out
  '';
}
