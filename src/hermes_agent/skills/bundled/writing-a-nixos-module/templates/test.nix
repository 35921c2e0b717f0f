# A VM test for the module: `nix build .#checks.x86_64-linux.myapp -L`
# (in a flake: checks.x86_64-linux.myapp = pkgs.testers.runNixOSTest ./test.nix;)
{
  name = "myapp";

  nodes.machine =
    { ... }:
    {
      imports = [ ./module.nix ];
      services.myapp = {
        enable = true;
        port = 8080;
        settings.log_level = "debug";
      };
    };

  testScript = ''
    machine.wait_for_unit("myapp.service")
    machine.wait_for_open_port(8080)
    machine.succeed("curl --fail --silent http://127.0.0.1:8080/ >&2")
    # the state directory exists and is private
    machine.succeed("test -d /var/lib/myapp")
    # the service does not run as root
    pid = machine.succeed("systemctl show myapp -p MainPID --value").strip()
    machine.fail(f"test $(stat -c %u /proc/{pid}) -eq 0")
  '';
}
