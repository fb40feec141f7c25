from horm.pretrained import main

main()
