from horm.cli import main

main()
