from demo.examples import main

main()
