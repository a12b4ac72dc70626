from regsync.cli import main

main()
