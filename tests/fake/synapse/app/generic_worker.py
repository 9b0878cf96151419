from synapse.app._fake import main

if __name__ == "__main__":
    main(is_main=False)
