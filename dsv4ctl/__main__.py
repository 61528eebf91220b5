from dsv4ctl.cli import main

main()
