from netprov.cli.app import main

main()
