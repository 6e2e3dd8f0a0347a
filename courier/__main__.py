from courier.cli.main import main

main()
