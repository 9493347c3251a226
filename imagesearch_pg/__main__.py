from imagesearch_pg.cli import main

main()
