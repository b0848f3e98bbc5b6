from tokcodec.cli import main

main()
